package boot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"strconv"
)

// ReadPPM decodes a binary PPM (P6, maxval 255), the format of qemu's
// screendump.
func ReadPPM(r io.Reader) (*image.RGBA, error) {
	br := bufio.NewReader(r)
	var fields []int
	magic := ""
	for len(fields) < 3 {
		tok, err := ppmToken(br)
		if err != nil {
			return nil, fmt.Errorf("PPM header: %w", err)
		}
		if magic == "" {
			magic = tok
			if magic != "P6" {
				return nil, fmt.Errorf("PPM: magic %q, want P6", magic)
			}
			continue
		}
		n, err := strconv.Atoi(tok)
		if err != nil || n <= 0 || n > 1<<15 {
			return nil, fmt.Errorf("PPM: bad header value %q", tok)
		}
		fields = append(fields, n)
	}
	w, h, maxv := fields[0], fields[1], fields[2]
	if maxv != 255 {
		return nil, fmt.Errorf("PPM: maxval %d, want 255", maxv)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	row := make([]byte, 3*w)
	for y := 0; y < h; y++ {
		if _, err := io.ReadFull(br, row); err != nil {
			return nil, fmt.Errorf("PPM pixels: %w", err)
		}
		for x := 0; x < w; x++ {
			img.SetRGBA(x, y, color.RGBA{row[3*x], row[3*x+1], row[3*x+2], 255})
		}
	}
	return img, nil
}

// ppmToken reads one whitespace-separated header token (skipping
// comments) and the single whitespace byte after it.
func ppmToken(br *bufio.Reader) (string, error) {
	var tok bytes.Buffer
	for {
		c, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		switch {
		case c == '#' && tok.Len() == 0:
			if _, err := br.ReadBytes('\n'); err != nil {
				return "", err
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if tok.Len() > 0 {
				return tok.String(), nil
			}
		default:
			tok.WriteByte(c)
			if tok.Len() > 16 {
				return "", errors.New("token too long")
			}
		}
	}
}

// PPMToPNG converts a PPM screendump to PNG.
func PPMToPNG(ppm io.Reader, out io.Writer) (*image.RGBA, error) {
	img, err := ReadPPM(ppm)
	if err != nil {
		return nil, err
	}
	return img, png.Encode(out, img)
}

// screenStats summarizes a screenshot: whether it is blank (one colour,
// black or otherwise), a mostly-blue stop screen, and a hash of its
// pixels to tell whether it changed.
type screenStats struct {
	Blank bool
	Blue  bool
	Sum   uint64
}

func statsOf(img *image.RGBA) screenStats {
	var st screenStats
	first := [3]byte{img.Pix[0], img.Pix[1], img.Pix[2]}
	same, blue, n := 0, 0, 0
	var h uint64 = 14695981039346656037
	for i := 0; i+3 < len(img.Pix); i += 4 {
		r, g, b := img.Pix[i], img.Pix[i+1], img.Pix[i+2]
		h = (h ^ uint64(r)<<16 ^ uint64(g)<<8 ^ uint64(b)) * 1099511628211
		if r == first[0] && g == first[1] && b == first[2] {
			same++
		}
		// Windows stop screens: #0078D7 (10), #000080 (XP/7), #1032A0
		if b > 100 && int(b) > int(r)+60 && int(b) > int(g)+20 {
			blue++
		}
		n++
	}
	st.Sum = h
	st.Blank = same == n
	st.Blue = blue*10 >= n*7 // 70 % of the screen
	return st
}
