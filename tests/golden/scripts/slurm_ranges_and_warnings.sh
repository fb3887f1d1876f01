#!/bin/bash
#SBATCH --nodes=2-4
#SBATCH --tasks-per-node=8
#SBATCH --mem=0
#SBATCH --time=UNLIMITED
#SBATCH --array=1-10%2
#SBATCH --constraint=ib
#SBATCH --dependency=afterok:1234
#SBATCH --nodelist=node[01-02]
#SBATCH --qos=long

mpirun ./solver
