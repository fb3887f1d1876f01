#!/bin/bash
#SBATCH --account=chem-lab
#SBATCH --ntasks=18
#SBATCH --mem-per-cpu=1G
module load lammps
lmp -in in.melt
