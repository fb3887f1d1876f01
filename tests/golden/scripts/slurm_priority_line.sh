#!/bin/bash
#SBATCH -J tiered
#SBATCH --qos=economy
#SBATCH -n 4 --mem-per-cpu=2G
#BURST --priority on-demand-priority

./run
