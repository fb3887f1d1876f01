#!/bin/bash
#SBATCH --job-name=train
#SBATCH --gres=gpu:tesla:2
#SBATCH --mem-per-gpu=16G
#SBATCH --cpus-per-task=8
#SBATCH --time=0-06

python train.py
