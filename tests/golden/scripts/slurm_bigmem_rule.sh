#!/bin/bash
#SBATCH --partition=bigmem
#SBATCH --ntasks=4
#SBATCH --mem=64G
#SBATCH --time=08:00:00
./assemble
