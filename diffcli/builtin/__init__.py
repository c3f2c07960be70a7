"""The shipped digits models: data, tokenizer writer, training, quality judge."""
