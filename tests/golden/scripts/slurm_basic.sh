#!/bin/bash
#SBATCH --job-name=hello
#SBATCH --account=physics
#SBATCH --partition=rescale
#SBATCH --ntasks=1
#SBATCH --mem=4G
#SBATCH --time=30
#SBATCH --output=hello-%j.out
#SBATCH --error=hello-%j.err

echo "hello from $(hostname)"
