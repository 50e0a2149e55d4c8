"""pulsetrain's worker: trains a TensorFlow model on messages consumed from an Apache Pulsar topic.

Every worker pod of a `TrainingPipeline` (and `pulsetrain run` on one machine) runs this package: it
reads the worker configuration (`pulsetrain.config`), consumes and decodes message batches
(`pulsetrain.decode`), trains in lock-step with its peers under `MultiWorkerMirroredStrategy`, and
acknowledges messages only once the checkpoint that contains them is durable. Importing the package
imports neither TensorFlow nor NumPy; the modules that need them import them themselves.
"""

__version__ = "0.1.0"
