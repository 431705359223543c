from hallelujah.cli import main

main()
