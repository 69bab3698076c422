from runtime.local.main import main

raise SystemExit(main())
