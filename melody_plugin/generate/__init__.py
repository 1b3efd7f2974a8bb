"""Generation: the generator, its samplers, bundles and the SavedModel export."""
