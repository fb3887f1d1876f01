#!/usr/bin/env python3
#SBATCH -n 4
#SBATCH --gpus-per-task=1
#SBATCH --mem-per-cpu=4096
#SBATCH -t 1-12
print("python batch script")
