"""Pure builders: a TrainingPipeline resource in, Kubernetes object dicts and worker configuration out."""
