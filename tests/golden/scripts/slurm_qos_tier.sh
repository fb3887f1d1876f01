#!/bin/bash
#SBATCH -J cheap
#SBATCH --qos=economy
#SBATCH -n 4 --mem-per-cpu=2G

./run
