#!/bin/bash
# Quoted values, trailing comments, repeated options (last wins), look-alikes.
#SBATCH -J "first name"
#SBATCH --job-name 'final name'   # the last one wins
##SBATCH --mem=999G
# SBATCH --nodes=99
#SBatch --nodes=99
#SBATCH --output="out dir/%x-%j.log" --mem 1536m
#SBATCH -n 2 -n 3
#SBATCH -t4:00:00

cd "$SLURM_SUBMIT_DIR"
#SBATCH --nodes=50
./run
