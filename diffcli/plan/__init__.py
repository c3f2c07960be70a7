"""What to do: the key table, presets, prompts files, scheduler names, resolved items. No torch."""
