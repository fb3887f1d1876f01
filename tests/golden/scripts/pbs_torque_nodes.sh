#!/bin/bash
#PBS -l nodes=2:ppn=8,walltime=04:00:00
#PBS -l pmem=2gb
#PBS -t 1-5
#PBS -e errors.log
#PBS -N torque-array
cd $PBS_O_WORKDIR
mpirun -machinefile $PBS_NODEFILE ./app $PBS_ARRAYID
