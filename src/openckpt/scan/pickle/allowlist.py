"""The allowlist: exact ``(module, qualname)`` pairs each loader may import, after alias canonicalisation.

Every entry rebuilds data (tensors, arrays, containers, estimators) and none runs code given in the file. The
torch set is ``torch.load(weights_only=True)``'s own (``torch/_weights_only_unpickler.py``) plus the classes of
``torch.nn`` (full-module pickles); the sklearn set is generated from ``sklearn.utils.all_estimators()`` and the
helper classes fitted estimators pickle (trees, losses, links). Data, not logic: :mod:`.globals` decides.
"""

from __future__ import annotations

__all__ = ["ALLOWED", "WEIGHTS_ONLY"]

_DTYPES = (
    "bfloat16 bits16 bits1x8 bits2x4 bits4x2 bits8 bool complex128 complex32 complex64 float16 float32 "
    "float4_e2m1fn_x2 float64 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu "
    "int1 int16 int2 int3 int32 int4 int5 int6 int64 int7 int8 qint32 qint8 quint2x4 quint4x2 quint8 "
    "uint1 uint16 uint2 uint3 uint32 uint4 uint5 uint6 uint64 uint7 uint8 half float double long int short cfloat "
    "cdouble chalf"
)
_TENSORS = "BFloat16 Bool Byte Char Double Float Half Int Long Short"
_STORAGES = (
    "BFloat16Storage BoolStorage ByteStorage CharStorage ComplexDoubleStorage ComplexFloatStorage DoubleStorage "
    "FloatStorage HalfStorage IntStorage LongStorage QInt32Storage QInt8Storage QUInt2x4Storage QUInt4x2Storage "
    "QUInt8Storage ShortStorage"
)
_TYPES = " ".join(t + "Tensor" for t in _TENSORS.split())

TORCH: dict[str, str] = {
    "torch": f"Size Tensor device layout memory_format strided sparse_coo sparse_csr sparse_csc sparse_bsr "
    f"sparse_bsc _mkldnn per_tensor_affine per_tensor_symmetric per_channel_affine per_channel_symmetric "
    f"per_channel_affine_float_qparams contiguous_format channels_last preserve_format channels_last_3d "
    f"{_DTYPES} {_STORAGES} {_TYPES}",
    "torch.cuda": f"{_STORAGES} {_TYPES}",
    "torch.sparse": _TYPES,
    "torch.cuda.sparse": _TYPES,
    "torch._utils": "_rebuild_parameter _rebuild_parameter_with_state _rebuild_qtensor _rebuild_tensor "
    "_rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_sparse_tensor _rebuild_meta_tensor_no_storage "
    "_rebuild_nested_tensor _rebuild_wrapper_subclass _rebuild_device_tensor_from_numpy "
    "_rebuild_device_tensor_from_cpu_tensor",
    "torch._tensor": "_rebuild_from_type_v2",
    "torch.nn.parameter": "Parameter Buffer UninitializedParameter UninitializedBuffer",
    "torch.serialization": "_get_layout",
    "torch.storage": "TypedStorage UntypedStorage",
    "torch.torch_version": "TorchVersion",
}

BASE: dict[str, str] = {
    "builtins": "set frozenset bytearray complex slice range object int float str bytes bool list tuple dict",
    "collections": "OrderedDict Counter defaultdict deque",
    "_codecs": "encode",
    "copyreg": "_reconstructor __newobj__ __newobj_ex__",
    "datetime": "datetime date time timedelta timezone",
    "decimal": "Decimal",
    "fractions": "Fraction",
    "uuid": "UUID",
    "argparse": "Namespace",
    "pathlib": "Path PosixPath WindowsPath PurePath PurePosixPath PureWindowsPath",
    "types": "SimpleNamespace",
}

_NP_SCALARS = (
    "bool_ bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 longdouble complex64 "
    "complex128 clongdouble str_ bytes_ void object_ datetime64 timedelta64 intc uintc intp uintp short ushort "
    "longlong ulonglong half single double csingle cdouble generic number integer floating"
)
NUMPY: dict[str, str] = {
    "numpy": f"ndarray dtype matrix {_NP_SCALARS}",
    "numpy._core.multiarray": "_reconstruct scalar",
    "numpy._core.numeric": "_frombuffer",
    "numpy.ma.core": "_mareconstruct MaskedArray mvoid",
    "numpy.ma": "MaskedArray mvoid",
    "numpy.dtypes": "BoolDType Int8DType Int16DType Int32DType Int64DType UInt8DType UInt16DType UInt32DType "
    "UInt64DType Float16DType Float32DType Float64DType LongDoubleDType Complex64DType Complex128DType "
    "CLongDoubleDType StrDType BytesDType VoidDType ObjectDType DateTime64DType TimeDelta64DType StringDType",
    "numpy.random._pickle": "__bit_generator_ctor __generator_ctor __randomstate_ctor",
    "numpy.random._mt19937": "MT19937",
    "numpy.random._pcg64": "PCG64 PCG64DXSM",
    "numpy.random._philox": "Philox",
    "numpy.random._sfc64": "SFC64",
    "numpy.random._generator": "Generator",
    "numpy.random.mtrand": "RandomState",
    "numpy.random.bit_generator": "SeedSequence __pyx_unpickle_SeedSequence",
}

JOBLIB: dict[str, str] = {
    "joblib.numpy_pickle": "NumpyArrayWrapper",
    "joblib.numpy_pickle_compat": "NDArrayWrapper ZNDArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle": "NumpyArrayWrapper",
}

SKLEARN: dict[str, str] = {
    "sklearn._loss._loss": (
        "CyAbsoluteError CyExponentialLoss CyHalfBinomialLoss CyHalfGammaLoss CyHalfMultinomialLoss "
        "CyHalfPoissonLoss CyHalfSquaredError CyHalfTweedieLoss CyHalfTweedieLossIdentity CyHuberLoss "
        "CyLossFunction CyPinballLoss __pyx_unpickle_CyHalfMultinomialLoss"
    ),
    "sklearn._loss.link": "BaseLink HalfLogitLink IdentityLink Interval LogLink LogitLink MultinomialLogit",
    "sklearn._loss.loss": (
        "AbsoluteError ArrayAPILossMixin BaseLoss ExponentialLoss HalfBinomialLoss HalfBinomialLossArrayAPI "
        "HalfGammaLoss HalfMultinomialLoss HalfMultinomialLossArrayAPI HalfPoissonLoss "
        "HalfPoissonLossArrayAPI HalfSquaredError HalfTweedieLoss HalfTweedieLossIdentity HuberLoss "
        "PinballLoss"
    ),
    "sklearn.calibration": (
        "CalibratedClassifierCV CalibrationDisplay _CalibratedClassifier _SigmoidCalibration _TemperatureScaling"
    ),
    "sklearn.cluster._affinity_propagation": "AffinityPropagation",
    "sklearn.cluster._agglomerative": "AgglomerativeClustering FeatureAgglomeration",
    "sklearn.cluster._bicluster": "SpectralBiclustering SpectralCoclustering",
    "sklearn.cluster._birch": "Birch",
    "sklearn.cluster._bisect_k_means": "BisectingKMeans",
    "sklearn.cluster._dbscan": "DBSCAN",
    "sklearn.cluster._hdbscan.hdbscan": "HDBSCAN",
    "sklearn.cluster._kmeans": "KMeans MiniBatchKMeans",
    "sklearn.cluster._mean_shift": "MeanShift",
    "sklearn.cluster._optics": "OPTICS",
    "sklearn.cluster._spectral": "SpectralClustering",
    "sklearn.compose._column_transformer": "ColumnTransformer make_column_selector",
    "sklearn.compose._target": "TransformedTargetRegressor",
    "sklearn.covariance._elliptic_envelope": "EllipticEnvelope",
    "sklearn.covariance._empirical_covariance": "EmpiricalCovariance",
    "sklearn.covariance._graph_lasso": "GraphicalLasso GraphicalLassoCV",
    "sklearn.covariance._robust_covariance": "MinCovDet",
    "sklearn.covariance._shrunk_covariance": "LedoitWolf OAS ShrunkCovariance",
    "sklearn.cross_decomposition._pls": "CCA PLSCanonical PLSRegression PLSSVD",
    "sklearn.decomposition._dict_learning": "DictionaryLearning MiniBatchDictionaryLearning SparseCoder",
    "sklearn.decomposition._factor_analysis": "FactorAnalysis",
    "sklearn.decomposition._fastica": "FastICA",
    "sklearn.decomposition._incremental_pca": "IncrementalPCA",
    "sklearn.decomposition._kernel_pca": "KernelPCA",
    "sklearn.decomposition._lda": "LatentDirichletAllocation",
    "sklearn.decomposition._nmf": "MiniBatchNMF NMF",
    "sklearn.decomposition._pca": "PCA",
    "sklearn.decomposition._sparse_pca": "MiniBatchSparsePCA SparsePCA",
    "sklearn.decomposition._truncated_svd": "TruncatedSVD",
    "sklearn.discriminant_analysis": "LinearDiscriminantAnalysis QuadraticDiscriminantAnalysis",
    "sklearn.dummy": "DummyClassifier DummyRegressor",
    "sklearn.ensemble._bagging": "BaggingClassifier BaggingRegressor",
    "sklearn.ensemble._forest": (
        "ExtraTreesClassifier ExtraTreesRegressor RandomForestClassifier RandomForestRegressor RandomTreesEmbedding"
    ),
    "sklearn.ensemble._gb": "BaseGradientBoosting GradientBoostingClassifier GradientBoostingRegressor VerboseReporter",
    "sklearn.ensemble._hist_gradient_boosting.binning": "_BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting": (
        "HistGradientBoostingClassifier HistGradientBoostingRegressor"
    ),
    "sklearn.ensemble._hist_gradient_boosting.predictor": "TreePredictor",
    "sklearn.ensemble._iforest": "IsolationForest",
    "sklearn.ensemble._stacking": "StackingClassifier StackingRegressor",
    "sklearn.ensemble._voting": "VotingClassifier VotingRegressor",
    "sklearn.ensemble._weight_boosting": "AdaBoostClassifier AdaBoostRegressor",
    "sklearn.feature_extraction._dict_vectorizer": "DictVectorizer",
    "sklearn.feature_extraction._hash": "FeatureHasher",
    "sklearn.feature_extraction.image": "PatchExtractor",
    "sklearn.feature_extraction.text": "CountVectorizer HashingVectorizer TfidfTransformer TfidfVectorizer",
    "sklearn.feature_selection._from_model": "SelectFromModel",
    "sklearn.feature_selection._rfe": "RFE RFECV",
    "sklearn.feature_selection._sequential": "SequentialFeatureSelector",
    "sklearn.feature_selection._univariate_selection": (
        "GenericUnivariateSelect SelectFdr SelectFpr SelectFwe SelectKBest SelectPercentile"
    ),
    "sklearn.feature_selection._variance_threshold": "VarianceThreshold",
    "sklearn.frozen._frozen": "FrozenEstimator",
    "sklearn.gaussian_process._gpc": "GaussianProcessClassifier",
    "sklearn.gaussian_process._gpr": "GaussianProcessRegressor",
    "sklearn.impute._base": "MissingIndicator SimpleImputer",
    "sklearn.impute._knn": "KNNImputer",
    "sklearn.isotonic": "IsotonicRegression",
    "sklearn.kernel_approximation": "AdditiveChi2Sampler Nystroem PolynomialCountSketch RBFSampler SkewedChi2Sampler",
    "sklearn.kernel_ridge": "KernelRidge",
    "sklearn.linear_model._base": "LinearRegression",
    "sklearn.linear_model._bayes": "ARDRegression BayesianRidge",
    "sklearn.linear_model._coordinate_descent": (
        "ElasticNet ElasticNetCV Lasso LassoCV MultiTaskElasticNet MultiTaskElasticNetCV MultiTaskLasso "
        "MultiTaskLassoCV"
    ),
    "sklearn.linear_model._glm.glm": "GammaRegressor PoissonRegressor TweedieRegressor",
    "sklearn.linear_model._huber": "HuberRegressor",
    "sklearn.linear_model._least_angle": "Lars LarsCV LassoLars LassoLarsCV LassoLarsIC",
    "sklearn.linear_model._logistic": "LogisticRegression LogisticRegressionCV",
    "sklearn.linear_model._omp": "OrthogonalMatchingPursuit OrthogonalMatchingPursuitCV",
    "sklearn.linear_model._passive_aggressive": "PassiveAggressiveClassifier PassiveAggressiveRegressor",
    "sklearn.linear_model._perceptron": "Perceptron",
    "sklearn.linear_model._quantile": "QuantileRegressor",
    "sklearn.linear_model._ransac": "RANSACRegressor",
    "sklearn.linear_model._ridge": "Ridge RidgeCV RidgeClassifier RidgeClassifierCV",
    "sklearn.linear_model._stochastic_gradient": "SGDClassifier SGDOneClassSVM SGDRegressor",
    "sklearn.linear_model._theil_sen": "TheilSenRegressor",
    "sklearn.manifold._classical_mds": "ClassicalMDS",
    "sklearn.manifold._isomap": "Isomap",
    "sklearn.manifold._locally_linear": "LocallyLinearEmbedding",
    "sklearn.manifold._mds": "MDS",
    "sklearn.manifold._spectral_embedding": "SpectralEmbedding",
    "sklearn.manifold._t_sne": "TSNE",
    "sklearn.metrics._dist_metrics": (
        "BrayCurtisDistance32 BrayCurtisDistance64 CanberraDistance32 CanberraDistance64 ChebyshevDistance32 "
        "ChebyshevDistance64 DiceDistance32 DiceDistance64 DistanceMetric DistanceMetric32 DistanceMetric64 "
        "EuclideanDistance32 EuclideanDistance64 HammingDistance32 HammingDistance64 HaversineDistance32 "
        "HaversineDistance64 JaccardDistance32 JaccardDistance64 KulsinskiDistance32 KulsinskiDistance64 "
        "MahalanobisDistance32 MahalanobisDistance64 ManhattanDistance32 ManhattanDistance64 "
        "MatchingDistance32 MatchingDistance64 MinkowskiDistance32 MinkowskiDistance64 PyFuncDistance32 "
        "PyFuncDistance64 RogersTanimotoDistance32 RogersTanimotoDistance64 RussellRaoDistance32 "
        "RussellRaoDistance64 SEuclideanDistance32 SEuclideanDistance64 SokalMichenerDistance32 "
        "SokalMichenerDistance64 SokalSneathDistance32 SokalSneathDistance64 __pyx_unpickle_DistanceMetric"
    ),
    "sklearn.mixture._bayesian_mixture": "BayesianGaussianMixture",
    "sklearn.mixture._gaussian_mixture": "GaussianMixture",
    "sklearn.model_selection._classification_threshold": "FixedThresholdClassifier TunedThresholdClassifierCV",
    "sklearn.model_selection._search": "GridSearchCV RandomizedSearchCV",
    "sklearn.multiclass": "OneVsOneClassifier OneVsRestClassifier OutputCodeClassifier _ConstantPredictor",
    "sklearn.multioutput": "ClassifierChain MultiOutputClassifier MultiOutputRegressor RegressorChain",
    "sklearn.naive_bayes": "BernoulliNB CategoricalNB ComplementNB GaussianNB MultinomialNB",
    "sklearn.neighbors._ball_tree": (
        "BallTree BallTree32 BallTree64 BinaryTree32 BinaryTree64 NeighborsHeap32 NeighborsHeap64 NodeHeap"
    ),
    "sklearn.neighbors._classification": "KNeighborsClassifier RadiusNeighborsClassifier",
    "sklearn.neighbors._graph": "KNeighborsTransformer RadiusNeighborsTransformer",
    "sklearn.neighbors._kd_tree": (
        "BinaryTree32 BinaryTree64 KDTree KDTree32 KDTree64 NeighborsHeap32 NeighborsHeap64 NodeHeap"
    ),
    "sklearn.neighbors._kde": "KernelDensity",
    "sklearn.neighbors._lof": "LocalOutlierFactor",
    "sklearn.neighbors._nca": "NeighborhoodComponentsAnalysis",
    "sklearn.neighbors._nearest_centroid": "NearestCentroid",
    "sklearn.neighbors._quad_tree": "_QuadTree",
    "sklearn.neighbors._regression": "KNeighborsRegressor RadiusNeighborsRegressor",
    "sklearn.neighbors._unsupervised": "NearestNeighbors",
    "sklearn.neural_network._multilayer_perceptron": "MLPClassifier MLPRegressor",
    "sklearn.neural_network._rbm": "BernoulliRBM",
    "sklearn.pipeline": "FeatureUnion Pipeline",
    "sklearn.preprocessing._data": (
        "Binarizer KernelCenterer MaxAbsScaler MinMaxScaler Normalizer PowerTransformer QuantileTransformer "
        "RobustScaler StandardScaler"
    ),
    "sklearn.preprocessing._discretization": "KBinsDiscretizer",
    "sklearn.preprocessing._encoders": "OneHotEncoder OrdinalEncoder",
    "sklearn.preprocessing._function_transformer": "FunctionTransformer",
    "sklearn.preprocessing._label": "LabelBinarizer LabelEncoder MultiLabelBinarizer",
    "sklearn.preprocessing._polynomial": "PolynomialFeatures SplineTransformer",
    "sklearn.preprocessing._target_encoder": "TargetEncoder",
    "sklearn.random_projection": "GaussianRandomProjection SparseRandomProjection",
    "sklearn.semi_supervised._label_propagation": "LabelPropagation LabelSpreading",
    "sklearn.semi_supervised._self_training": "SelfTrainingClassifier",
    "sklearn.svm._classes": "LinearSVC LinearSVR NuSVC NuSVR OneClassSVM SVC SVR",
    "sklearn.tree._classes": "DecisionTreeClassifier DecisionTreeRegressor ExtraTreeClassifier ExtraTreeRegressor",
    "sklearn.tree._criterion": (
        "ClassificationCriterion Criterion Entropy Gini MAE MSE Poisson RegressionCriterion __pyx_unpickle_Criterion"
    ),
    "sklearn.tree._splitter": "BestSparseSplitter BestSplitter RandomSparseSplitter RandomSplitter Splitter",
    "sklearn.tree._tree": (
        "BestFirstTreeBuilder DepthFirstTreeBuilder Tree TreeBuilder _AlphaPruner _CCPPruneController "
        "_PathFinder __pyx_unpickle_TreeBuilder __pyx_unpickle__CCPPruneController"
    ),
    "sklearn.utils._bunch": "Bunch",
    "sklearn.utils._metadata_requests": (
        "MetadataRequest MetadataRouter MethodMapping MethodMetadataRequest MethodPair RequestMethod "
        "RouterMappingPair _MetadataRequester _RoutingNotSupportedMixin"
    ),
    "sklearn.utils._param_validation": (
        "HasMethods Hidden Interval InvalidParameterError MissingValues Options RealNotInt StrOptions "
        "_ArrayLikes _Booleans _CVObjects _Callables _Constraint _InstancesOf _IterablesNotString "
        "_NanConstraint _NoneConstraint _PandasNAConstraint _RandomStates _SparseMatrices _VerboseHelper"
    ),
    "sklearn.utils._set_output": (
        "ContainerAdapterProtocol ContainerAdaptersManager PandasAdapter PolarsAdapter _SetOutputMixin"
    ),
}

TORCH_NN: dict[str, str] = {
    "torch.nn.modules.activation": (
        "CELU ELU GELU GLU Hardshrink Hardsigmoid Hardswish Hardtanh LeakyReLU LogSigmoid LogSoftmax Mish "
        "MultiheadAttention PReLU RReLU ReLU ReLU6 SELU SiLU Sigmoid Softmax Softmax2d Softmin Softplus "
        "Softshrink Softsign Tanh Tanhshrink Threshold"
    ),
    "torch.nn.modules.adaptive": "AdaptiveLogSoftmaxWithLoss",
    "torch.nn.modules.batchnorm": (
        "BatchNorm1d BatchNorm2d BatchNorm3d LazyBatchNorm1d LazyBatchNorm2d LazyBatchNorm3d SyncBatchNorm"
    ),
    "torch.nn.modules.channelshuffle": "ChannelShuffle",
    "torch.nn.modules.container": "Container ModuleDict ModuleList ParameterDict ParameterList Sequential",
    "torch.nn.modules.conv": (
        "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d LazyConv1d LazyConv2d "
        "LazyConv3d LazyConvTranspose1d LazyConvTranspose2d LazyConvTranspose3d"
    ),
    "torch.nn.modules.distance": "CosineSimilarity PairwiseDistance",
    "torch.nn.modules.dropout": "AlphaDropout Dropout Dropout1d Dropout2d Dropout3d FeatureAlphaDropout",
    "torch.nn.modules.flatten": "Flatten Unflatten",
    "torch.nn.modules.fold": "Fold Unfold",
    "torch.nn.modules.instancenorm": (
        "InstanceNorm1d InstanceNorm2d InstanceNorm3d LazyInstanceNorm1d LazyInstanceNorm2d LazyInstanceNorm3d"
    ),
    "torch.nn.modules.linear": "Bilinear Identity LazyLinear Linear",
    "torch.nn.modules.loss": (
        "BCELoss BCEWithLogitsLoss CTCLoss CosineEmbeddingLoss CrossEntropyLoss GaussianNLLLoss "
        "HingeEmbeddingLoss HuberLoss KLDivLoss L1Loss LinearCrossEntropyLoss MSELoss MarginRankingLoss "
        "MultiLabelMarginLoss MultiLabelSoftMarginLoss MultiMarginLoss NLLLoss NLLLoss2d PoissonNLLLoss "
        "SmoothL1Loss SoftMarginLoss TripletMarginLoss TripletMarginWithDistanceLoss"
    ),
    "torch.nn.modules.module": "Module",
    "torch.nn.modules.normalization": "CrossMapLRN2d GroupNorm LayerNorm LocalResponseNorm RMSNorm",
    "torch.nn.modules.padding": (
        "CircularPad1d CircularPad2d CircularPad3d ConstantPad1d ConstantPad2d ConstantPad3d ReflectionPad1d "
        "ReflectionPad2d ReflectionPad3d ReplicationPad1d ReplicationPad2d ReplicationPad3d ZeroPad1d "
        "ZeroPad2d ZeroPad3d"
    ),
    "torch.nn.modules.pixelshuffle": "PixelShuffle PixelUnshuffle",
    "torch.nn.modules.pooling": (
        "AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d "
        "AdaptiveMaxPool3d AvgPool1d AvgPool2d AvgPool3d FractionalMaxPool2d FractionalMaxPool3d LPPool1d "
        "LPPool2d LPPool3d MaxPool1d MaxPool2d MaxPool3d MaxUnpool1d MaxUnpool2d MaxUnpool3d"
    ),
    "torch.nn.modules.rnn": "GRU GRUCell LSTM LSTMCell RNN RNNBase RNNCell RNNCellBase",
    "torch.nn.modules.sparse": "Embedding EmbeddingBag",
    "torch.nn.modules.transformer": (
        "Transformer TransformerDecoder TransformerDecoderLayer TransformerEncoder TransformerEncoderLayer"
    ),
    "torch.nn.modules.upsampling": "Upsample UpsamplingBilinear2d UpsamplingNearest2d",
    "torch.nn.parallel.data_parallel": "DataParallel",
}


def _pairs(*tables: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset((module, name) for table in tables for module, names in table.items() for name in names.split())


WEIGHTS_ONLY = _pairs(
    TORCH, {"collections": "OrderedDict Counter", "_codecs": "encode"}, {"builtins": "set bytearray complex"}
)
"""What ``torch.load(weights_only=True)`` accepts without ``add_safe_globals``."""

TORCHSCRIPT: dict[str, str] = {
    "torch.jit._pickle": "build_intlist build_tensorlist build_doublelist build_boollist build_tensor_from_id "
    "restore_type_tag",
}
"""The rebuild functions of a TorchScript archive's ``constants.pkl``/``code/*.debug_pkl``: each returns its argument
(``torch/jit/_pickle.py``). Classes under ``__torch__`` are the archive's own TorchScript types (:mod:`.globals`)."""

DCP_METADATA: dict[str, str] = {
    "torch.distributed.checkpoint.metadata": "Metadata MetadataIndex StorageMeta TensorProperties "
    "TensorStorageMetadata ChunkStorageMetadata BytesStorageMetadata _MEM_FORMAT_ENCODING",
    "torch.distributed.checkpoint.filesystem": "_StorageInfo",
}
"""The dataclasses (and one enum) of a ``torch.distributed.checkpoint`` ``.metadata`` file, which
``FileSystemReader.read_metadata`` unpickles: they only store their fields."""

ALLOWED: dict[str, frozenset[tuple[str, str]]] = {
    "torch": _pairs(BASE, TORCH, TORCH_NN, NUMPY),
    "torchscript": _pairs(BASE, TORCH, TORCHSCRIPT),
    "numpy": _pairs(BASE, NUMPY),
    "joblib": _pairs(BASE, NUMPY, JOBLIB, SKLEARN),
    "pickle": _pairs(BASE, TORCH, TORCH_NN, NUMPY, JOBLIB, SKLEARN, DCP_METADATA),
}
"""Per loader: ``torch`` (torch zip and legacy files), ``torchscript`` (``torch.jit.load``'s pickles), ``numpy``
(object arrays), ``joblib``, ``pickle`` (a raw pickle, which any of them may load)."""
