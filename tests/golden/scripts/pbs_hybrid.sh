#!/bin/bash
#PBS -l select=4:ncpus=8:mpiprocs=2:ompthreads=4:mem=32gb
#PBS -l walltime=1:00:00:00
#PBS -P climate
#PBS -N hybrid
mpiexec ./model
