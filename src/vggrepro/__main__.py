from vggrepro.cli import main

raise SystemExit(main())
