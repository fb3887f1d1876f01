#!/bin/bash
#SBATCH --mem=12Q
./x
