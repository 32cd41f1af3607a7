"""Write the embedded demo dataset: ``python tools/misc/generate_shapes_dataset.py data/shapes``.

Synthetic shapes (circle, square, triangle, cross, ring) on varied backgrounds, in COCO format:
OUT_DIR/{train,val}/*.png and OUT_DIR/annotations/instances_{train,val}.json. The same seed
gives the same dataset.
"""
import argparse

from mmdeform.datasets.shapes import generate_shapes_dataset


def parse_args():
    parser = argparse.ArgumentParser(description='Generate the synthetic shapes dataset')
    parser.add_argument('out_dir', help='folder to write the images and annotations to')
    parser.add_argument('--num-train', type=int, default=2000, help='training images')
    parser.add_argument('--num-val', type=int, default=200, help='validation images')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--size-range', type=int, nargs=2, default=(224, 320),
                        metavar=('MIN', 'MAX'), help='range of image widths and heights')
    return parser.parse_args()


def main():
    args = parse_args()
    ann_files = generate_shapes_dataset(args.out_dir, args.num_train, args.num_val, args.seed,
                                        args.size_range)
    for split, ann_file in ann_files.items():
        print(f'{split}: {ann_file}')


if __name__ == '__main__':
    main()
