from congregation.daemon import main

main()
