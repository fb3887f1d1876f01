#!/bin/sh
echo "everything comes from the sbatch command line"
