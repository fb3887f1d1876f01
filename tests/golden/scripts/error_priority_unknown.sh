#!/bin/bash
#SBATCH -n 2
#BURST --priority fastest

./run
