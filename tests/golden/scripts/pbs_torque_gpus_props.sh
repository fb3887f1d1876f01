#!/bin/bash
#PBS -l nodes=1:ppn=16:gpus=2:k80,walltime=02:00:00
#PBS -l mem=100mb
./gpu_app
