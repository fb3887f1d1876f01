#!/bin/bash
#SBATCH --time=30-00:00:00
./x
