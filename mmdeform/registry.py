"""mmdeform's registries: children of mmdet's, scope ``mmdeform``.

A config with ``default_scope = 'mmdeform'`` finds our modules here and everything of mmdet,
mmcv and mmengine (ResNet, CocoDataset, CocoMetric, hooks, ...) through the parents.
"""
from mmdet.registry import DATA_SAMPLERS as MMDET_DATA_SAMPLERS
from mmdet.registry import DATASETS as MMDET_DATASETS
from mmdet.registry import EVALUATOR as MMDET_EVALUATOR
from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import LOG_PROCESSORS as MMDET_LOG_PROCESSORS
from mmdet.registry import LOOPS as MMDET_LOOPS
from mmdet.registry import METRICS as MMDET_METRICS
from mmdet.registry import MODEL_WRAPPERS as MMDET_MODEL_WRAPPERS
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMDET_OPTIM_WRAPPER_CONSTRUCTORS
from mmdet.registry import OPTIM_WRAPPERS as MMDET_OPTIM_WRAPPERS
from mmdet.registry import OPTIMIZERS as MMDET_OPTIMIZERS
from mmdet.registry import PARAM_SCHEDULERS as MMDET_PARAM_SCHEDULERS
from mmdet.registry import RUNNER_CONSTRUCTORS as MMDET_RUNNER_CONSTRUCTORS
from mmdet.registry import RUNNERS as MMDET_RUNNERS
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmdet.registry import TRANSFORMS as MMDET_TRANSFORMS
from mmdet.registry import VISBACKENDS as MMDET_VISBACKENDS
from mmdet.registry import VISUALIZERS as MMDET_VISUALIZERS
from mmdet.registry import WEIGHT_INITIALIZERS as MMDET_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

SCOPE = 'mmdeform'

RUNNERS = Registry('runner', parent=MMDET_RUNNERS, scope=SCOPE)
RUNNER_CONSTRUCTORS = Registry('runner constructor', parent=MMDET_RUNNER_CONSTRUCTORS, scope=SCOPE)
LOOPS = Registry('loop', parent=MMDET_LOOPS, scope=SCOPE)
HOOKS = Registry('hook', parent=MMDET_HOOKS, scope=SCOPE)
DATASETS = Registry('dataset', parent=MMDET_DATASETS, scope=SCOPE,
                    locations=['mmdeform.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=MMDET_DATA_SAMPLERS, scope=SCOPE)
TRANSFORMS = Registry('transform', parent=MMDET_TRANSFORMS, scope=SCOPE,
                      locations=['mmdeform.datasets'])
MODELS = Registry('model', parent=MMDET_MODELS, scope=SCOPE, locations=['mmdeform.models'])
MODEL_WRAPPERS = Registry('model wrapper', parent=MMDET_MODEL_WRAPPERS, scope=SCOPE)
WEIGHT_INITIALIZERS = Registry('weight initializer', parent=MMDET_WEIGHT_INITIALIZERS, scope=SCOPE)
OPTIMIZERS = Registry('optimizer', parent=MMDET_OPTIMIZERS, scope=SCOPE)
OPTIM_WRAPPERS = Registry('optim wrapper', parent=MMDET_OPTIM_WRAPPERS, scope=SCOPE)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMDET_OPTIM_WRAPPER_CONSTRUCTORS, scope=SCOPE)
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMDET_PARAM_SCHEDULERS, scope=SCOPE)
METRICS = Registry('metric', parent=MMDET_METRICS, scope=SCOPE,
                   locations=['mmdeform.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMDET_EVALUATOR, scope=SCOPE)
TASK_UTILS = Registry('task util', parent=MMDET_TASK_UTILS, scope=SCOPE,
                      locations=['mmdeform.models'])
# mmdet's visualizers are imported by no module of ours: name their module, so that a build in our
# scope (mmdet's DetInferencer with scope='mmdeform') finds them without register_all_modules.
VISUALIZERS = Registry('visualizer', parent=MMDET_VISUALIZERS, scope=SCOPE,
                       locations=['mmdet.visualization'])
VISBACKENDS = Registry('vis_backend', parent=MMDET_VISBACKENDS, scope=SCOPE,
                       locations=['mmdet.visualization'])
LOG_PROCESSORS = Registry('log_processor', parent=MMDET_LOG_PROCESSORS, scope=SCOPE)
