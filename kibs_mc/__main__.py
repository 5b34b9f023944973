from kibs_mc.cli import main

main()
