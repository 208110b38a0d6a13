#!/usr/bin/env python
from hodei.cli import main

if __name__ == "__main__":
    main()
