#!/bin/bash
#PBS -N cfd-run
#PBS -q workq@pbs-server
#PBS -A eng042
#PBS -l select=2:ncpus=16:mpiprocs=16:mem=60gb
#PBS -l place=scatter
#PBS -l walltime=02:00:00
#PBS -j oe
#PBS -o login01:/home/bob/cfd/run.log

cd $PBS_O_WORKDIR
mpiexec ./cfd
