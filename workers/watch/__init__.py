"""Channel watching: new uploads of watched channels become runs, with nobody pasting a URL."""
