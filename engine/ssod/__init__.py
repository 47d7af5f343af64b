"""Building blocks of the semi-supervised methods: raw dense outputs of a detector, and
each method's pseudo-labelling and losses (one module per method). The trainers in
``engine/trainers`` put them into a step."""
