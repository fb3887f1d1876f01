#!/bin/bash
#PBS -l mem=10xb
./x
