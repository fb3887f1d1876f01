#!/bin/bash
#SBATCH --gpus=4
#SBATCH --cpus-per-task=2
#SBATCH --time=45:30

python sweep.py
