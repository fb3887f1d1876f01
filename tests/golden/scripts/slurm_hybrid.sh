#!/bin/bash
#SBATCH -N 2 -n 8 -c 4
#SBATCH --mem-per-cpu=2gb
#SBATCH -t 02:30:00
#SBATCH --export=ALL,OMP_PROC_BIND=close,CASE=airfoil
#SBATCH -D /scratch/alice/airfoil
#SBATCH -o slurm-%j.out

module purge
module load openfoam/9 gcc/12
mpirun -np $SLURM_NTASKS simpleFoam -parallel
