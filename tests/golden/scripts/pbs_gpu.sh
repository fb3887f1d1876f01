#!/bin/bash
#PBS -N gpu-train -l select=1:ncpus=8:ngpus=1:mem=48gb -l walltime=3600
python train.py
