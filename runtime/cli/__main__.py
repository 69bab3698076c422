from runtime.cli.main import main

raise SystemExit(main())
