#!/bin/bash
#PBS -l select=1:ncpus=4:mem=1gb
#PBS -l mem=2gb
./x
