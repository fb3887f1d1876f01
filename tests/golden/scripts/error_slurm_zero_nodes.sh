#!/bin/bash
#SBATCH -N 0
./x
