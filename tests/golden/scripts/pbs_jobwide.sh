#!/bin/bash
#PBS -l ncpus=4
#PBS -l mem=8gb
#PBS -l walltime=30:00
#PBS -V
#PBS -m abe -M bob@example.org
#PBS -v CASE=small,MODE=fast
./smp_solver
