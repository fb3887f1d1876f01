#!/bin/bash
#PBS -l walltime=1:2:3:4:5
./x
