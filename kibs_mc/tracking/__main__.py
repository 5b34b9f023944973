from kibs_mc.tracking.mlflow import main

main()
