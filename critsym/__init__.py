"""critsym: symbolic-numeric criticality of deep networks at initialization."""
