#!/bin/bash -l
# A classic MPI job: whole nodes, per-node memory without a unit (MB).
#SBATCH -J mpi-bench
#SBATCH -N2 --ntasks-per-node=16
#SBATCH --mem=32000
#SBATCH --time=1-00:00:00
#SBATCH --exclusive
#SBATCH --mail-type=END,FAIL
#SBATCH --mail-user=someone@example.org

mpirun ./bench
