#!/bin/bash
#PBS -l select=2:ncpus=4:mem=4gb:model=skylake
#PBS -l place=pack:excl
#PBS -l software=abaqus
#PBS -l walltime=00:45:00
./app
