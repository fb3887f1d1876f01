#!/bin/bash
#SBATCH -N 1 -n 4
#SBATCH -t 10
#SBATCH -J from-script
srun ./step
