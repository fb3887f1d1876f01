    #PBS -l nodes=3
    #PBS -l mem=12884901888
	#PBS -l walltime=7200
    # indented directives and comments are still the prologue
pbsdsh hostname
