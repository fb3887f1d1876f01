#!/bin/bash
#PBS -l ncpus=12,ngpus=1,mem=64GB,walltime=10:00:00
python infer.py
