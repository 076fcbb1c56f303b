"""``edl meter``: the meter and its arithmetic around any command, or the idle machine; it scores nothing."""
