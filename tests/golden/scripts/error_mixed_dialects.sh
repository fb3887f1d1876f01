#!/bin/bash
#SBATCH -n 2
#PBS -l ncpus=2
./x
