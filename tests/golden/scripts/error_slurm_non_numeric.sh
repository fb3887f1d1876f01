#!/bin/bash
#SBATCH -n four
./x
