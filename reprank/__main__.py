from reprank.cli import main

raise SystemExit(main())
