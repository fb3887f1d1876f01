#!/bin/bash
#PBS -l procs=24
#PBS -l mem=48gb
#PBS -l walltime=12:00:00
#PBS -J 1-10:2
#PBS -W depend=afterok:123.server
#PBS -S /bin/sh
mpirun ./sweep
