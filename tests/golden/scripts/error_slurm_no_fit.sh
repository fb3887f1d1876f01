#!/bin/bash
#SBATCH -N 1 --mem=4T
./x
