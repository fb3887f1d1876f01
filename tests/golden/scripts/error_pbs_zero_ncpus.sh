#!/bin/bash
#PBS -l select=2:ncpus=0
./x
